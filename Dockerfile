# One slim image for every collator process; the command picks the process:
#   docker run IMAGE listener | worker | beat | web | migrate | sync-config | generate-invoices --month 2026-11
FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config libmariadb-dev \
 && rm -rf /var/lib/apt/lists/*
COPY requirements.txt requirements-mysql.txt /src/
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir -r /src/requirements.txt -r /src/requirements-mysql.txt

FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmariadb3 fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /var/lib/ibp-collator --create-home collator
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY . /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    COLLATOR_CONFIG=/etc/ibp-collator/ibpcollator.json
USER collator
EXPOSE 9000
ENTRYPOINT ["/app/deploy/entrypoint.sh"]
CMD ["web"]
