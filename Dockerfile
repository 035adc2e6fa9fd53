# A worker image: eventpatterns on Python 3.11, its core compiled with mypyc
# (eventpatterns/compiled.py: ~1.5x the events/s of the interpreted core).
FROM python:3.11 AS build
WORKDIR /app
COPY pyproject.toml README.md ./
COPY eventpatterns ./eventpatterns
COPY examples ./examples
# The build runs from /, so that it compiles the installed package (the one the
# final stage copies), not the sources in /app that `python -m` would import first.
RUN python -m venv /venv \
 && /venv/bin/pip install --no-cache-dir '.[compiled]' \
 && cd / && /venv/bin/python -m eventpatterns.compiled \
 && /venv/bin/pip uninstall --yes mypy

FROM python:3.11-slim
COPY --from=build /venv /venv
ENV PATH=/venv/bin:$PATH
RUN useradd --create-home eventpatterns
USER eventpatterns
ENV EVENTPATTERNS_WEB_HOST=0.0.0.0 \
    EVENTPATTERNS_DATA_DIR=/home/eventpatterns/data
EXPOSE 6066
ENTRYPOINT ["eventpatterns"]
CMD ["run"]
