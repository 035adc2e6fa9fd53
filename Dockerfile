# A worker image: eventpatterns on Python 3.11.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY eventpatterns ./eventpatterns
COPY examples ./examples
RUN pip install --no-cache-dir . && useradd --create-home eventpatterns
USER eventpatterns
ENV EVENTPATTERNS_WEB_HOST=0.0.0.0 \
    EVENTPATTERNS_DATA_DIR=/home/eventpatterns/data
EXPOSE 6066
ENTRYPOINT ["eventpatterns"]
CMD ["run"]
