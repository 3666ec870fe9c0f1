# An S3-compatible server for the storage tests (moto in server mode).
FROM python:3.12-slim
RUN pip install --no-cache-dir "moto[server]>=5,<6"
EXPOSE 5000
CMD ["moto_server", "-H", "0.0.0.0", "-p", "5000"]
