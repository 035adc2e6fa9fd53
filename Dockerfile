# A worker image: eventpatterns on Python 3.11, its core compiled with mypyc
# (a wheel built with EVENTPATTERNS_COMPILE=1: ~1.5x the events/s of the interpreted core).
FROM python:3.11 AS build
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY build_support ./build_support
COPY eventpatterns ./eventpatterns
RUN EVENTPATTERNS_COMPILE=1 pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && python -m venv /venv \
 && /venv/bin/pip install --no-cache-dir /wheels/eventpatterns-*.whl

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
