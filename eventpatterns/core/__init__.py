"""The pure core: pattern model, expressions, evaluator. No Faust, Kafka, Redis or asyncio."""

from ..compiled import load_shared_libraries, refuse_stale_build

refuse_stale_build()  # before any compiled module of the core is imported
load_shared_libraries()
