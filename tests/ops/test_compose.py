"""docker-compose.yml without Docker: valid Compose, in step with the Procfile and the Makefile."""

import re
import shlex

import jsonschema
import pytest
import yaml
from django.conf import settings

from outbox.consumer.service import all_services

BASE = settings.BASE_DIR
SCHEMA = BASE / "tests" / "ops" / "schemas" / "compose-spec.json"
# Run by make run / Procfile but not the app image's services, and the other way round.
INFRASTRUCTURE = {"postgres", "rabbitmq"}
COMPOSE_ONLY = {"migrate", "flower"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((BASE / "docker-compose.yml").read_text())


def procfile() -> dict[str, str]:
    lines = (BASE / "Procfile").read_text().splitlines()
    return {
        name.strip(): command.strip()
        for name, command in (line.split(":", 1) for line in lines if line.strip())
    }


def words(command: str | list[str]) -> list[str]:
    """A command as words: `sh -c` unwrapped, set-up steps before the last `&&` dropped."""
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if argv[:2] == ["sh", "-c"]:
        argv = shlex.split(argv[2])
    if "&&" in argv:
        argv = argv[len(argv) - argv[::-1].index("&&") :]
    return argv


def test_compose_file_validates_against_the_compose_specification(compose):
    schema = yaml.safe_load(SCHEMA.read_text())  # JSON is YAML
    validator = jsonschema.Draft201909Validator(schema)  # its $schema URL is the 2019-09 draft
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_schema_really_checks(compose):
    """A broken copy is refused: a typo in a key and a wrong depends_on condition."""
    schema = yaml.safe_load(SCHEMA.read_text())
    broken = yaml.safe_load((BASE / "docker-compose.yml").read_text())
    broken["services"]["relay"]["helthcheck"] = {}
    broken["services"]["relay"]["depends_on"]["migrate"]["condition"] = "service_done"
    validator = jsonschema.Draft201909Validator(schema)  # its $schema URL is the 2019-09 draft
    messages = [error.message for error in validator.iter_errors(broken)]
    assert len(messages) >= 2, messages


def test_every_procfile_process_is_a_compose_service_with_the_same_command(compose):
    services = compose["services"]
    for name, command in procfile().items():
        assert name in services, f"Procfile process {name!r} has no compose service"
        compose_words, procfile_words = words(services[name]["command"]), words(command)
        if name == "web":
            # runserver HOST:PORT on a laptop; gunicorn bound to 0.0.0.0 in a container.
            assert procfile_words[:3] == ["python", "manage.py", "runserver"]
            assert compose_words[:2] == ["gunicorn", "fitness.wsgi:application"]
            assert "--bind" in compose_words
            continue
        host_port = re.compile(r"^(127\.0\.0\.1|0\.0\.0\.0|localhost)(:\d+)?$")
        assert [w for w in compose_words if not host_port.match(w)] == [
            w for w in procfile_words if not host_port.match(w)
        ], name
    app_services = {n for n, s in services.items() if s.get("image") == "acme-fitness:local"}
    assert app_services - COMPOSE_ONLY == set(procfile()), "compose runs a process make run doesn't"


def test_one_worker_per_consumer_service_with_a_healthcheck(compose):
    services = compose["services"]
    for service in all_services():
        worker = services[service.name]
        assert f"--consume-service {service.name}" in worker["command"]
        assert worker["healthcheck"]["test"][-2:] == ["--service", service.name]


def test_startup_order_uses_health_and_completion_conditions(compose):
    services = compose["services"]
    for name in ("postgres", "rabbitmq", "web", "relay"):
        assert "healthcheck" in services[name], name
    for name, service in services.items():
        if name in INFRASTRUCTURE:
            continue
        depends = service["depends_on"]
        assert depends["rabbitmq"]["condition"] == "service_healthy", name
        if name != "migrate":
            assert depends["migrate"]["condition"] == "service_completed_successfully", name
    assert services["migrate"]["restart"] == "no"
    assert services["rabbitmq"]["image"].endswith("-management")
    assert "15672:15672" in services["rabbitmq"]["ports"]


def test_migrate_covers_every_database_alias_of_the_makefile(compose):
    makefile = (BASE / "Makefile").read_text()
    aliases = re.search(r"^DATABASE_ALIASES := (.+)$", makefile, re.M).group(1).split()
    command = " ".join(compose["services"]["migrate"]["command"])
    loop = re.search(r"for alias in ([^;]+);", command).group(1).split()
    assert loop == aliases
    assert set(aliases) == set(settings.DATABASES)
    for step in ("setup_broker", "ensure_demo_users"):
        assert f"manage.py {step}" in command


def test_same_environment_variables_as_make_run(compose):
    env = compose["x-app"]["environment"]
    makefile = (BASE / "Makefile").read_text()
    assert re.search(
        rf"DJANGO_SETTINGS_MODULE \?= {env['DJANGO_SETTINGS_MODULE']}$", makefile, re.M
    )
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "SHIPPING_DELIVERY_DELAY_SECONDS"):
        assert name in env
    readme = (BASE / "README.md").read_text()
    for name in env:
        assert f"`{name}`" in readme, f"{name} is not documented in README's configuration table"


def test_requirements_pin_the_servers():
    requirements = (BASE / "requirements.txt").read_text()
    assert re.search(r"^gunicorn==[\d.]+$", requirements, re.M)
    assert re.search(r"^flower==[\d.]+$", (BASE / "requirements-compose.txt").read_text(), re.M)
    dockerfile = (BASE / "Dockerfile").read_text()
    assert "requirements-compose.txt" in dockerfile
