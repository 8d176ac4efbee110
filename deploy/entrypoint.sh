#!/bin/sh
# Runs one collator process by name (see the Dockerfile and the README's production section).
set -e
cd /app
command=${1:-web}
[ $# -gt 0 ] && shift
case "$command" in
  web)               exec gunicorn -c collator/gunicorn_conf.py collator.wsgi:application "$@" ;;
  listener)          exec python manage.py run_nats_listener "$@" ;;
  worker)            exec celery -A collator worker --loglevel=INFO "$@" ;;
  beat)              exec celery -A collator beat --loglevel=INFO "$@" ;;
  migrate)           exec python manage.py migrate --noinput "$@" ;;
  sync-config)       exec python manage.py sync_config "$@" ;;
  generate-invoices) exec python manage.py generate_invoices "$@" ;;
  manage)            exec python manage.py "$@" ;;
  *)                 exec "$command" "$@" ;;
esac
