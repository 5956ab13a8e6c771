# The app image of docker-compose.yml: web (gunicorn), relay, one worker per service, the
# shipping clock, beat, maintenance and Flower all run it with different commands.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=fitness.settings.local

WORKDIR /app
COPY requirements.txt requirements-compose.txt ./
RUN pip install -r requirements-compose.txt

COPY . .
# Static files for production settings (WhiteNoise serves STATIC_ROOT); local settings read them
# from the apps' folders directly. A throw-away key: collectstatic needs one, nothing is signed.
RUN DJANGO_SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput --verbosity 0 \
    && useradd --create-home --uid 10001 app \
    && mkdir -p var/mail \
    && chown -R app:app var
USER app

EXPOSE 8000
CMD ["gunicorn", "fitness.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "2", "--access-logfile", "-"]
