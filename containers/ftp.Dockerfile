# A plain FTP server (pyftpdlib) for the FTP tests; user "user", password "pass".
FROM python:3.12-slim
RUN pip install --no-cache-dir "pyftpdlib>=2" && mkdir -p /srv/ftp
EXPOSE 2121 30000-30009
CMD ["python", "-m", "pyftpdlib", "-p", "2121", "-w", "-d", "/srv/ftp", "-u", "user", "-P", "pass", "-r", "30000-30009", "-n", "127.0.0.1"]
