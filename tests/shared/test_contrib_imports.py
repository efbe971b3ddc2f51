"""``import omniq`` never needs a web framework; the integrations say what they need."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# sys.modules[name] = None makes `import name` raise ImportError, as if not installed.
WITHOUT = "import sys\nfor name in {names!r}:\n    sys.modules[name] = None\n"


def run(code: str, *missing: str) -> subprocess.CompletedProcess[str]:
    program = WITHOUT.format(names=list(missing)) + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120
    )


def test_omniq_imports_without_django_flask_or_starlette() -> None:
    completed = run(
        """
        import omniq, omniq.contrib
        assert "django" not in sys.modules or sys.modules["django"] is None
        print(omniq.OmniQ.__name__)
        """,
        "django",
        "flask",
        "starlette",
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "OmniQ"


def test_the_django_backend_without_django_names_the_extra() -> None:
    completed = run(
        """
        try:
            import omniq.contrib.django
        except ImportError as error:
            print(error)
        """,
        "django",
        "django.tasks",
    )
    assert completed.returncode == 0, completed.stderr
    assert "pip install 'omniq[django]'" in completed.stdout
    assert "Python 3.12+" in completed.stdout
