# A Google Cloud Storage emulator for the storage tests.
FROM python:3.12-slim
RUN pip install --no-cache-dir "gcp-storage-emulator>=2024.8"
EXPOSE 9023
CMD ["gcp-storage-emulator", "start", "--host", "0.0.0.0", "--port", "9023", "--in-memory"]
