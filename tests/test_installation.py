"""The project's top-level packages (trainer, serving, components, pipeline) are checked to be
its own: a same-named package of another distribution is named at the start, not imported."""
import os
import subprocess
import sys

from facealign import installation


def test_this_checkout_has_its_own_packages():
    assert installation.foreign_packages() == []


def _run(code: str, tmp_path):
    shadow = tmp_path / "serving"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise RuntimeError('the wrong serving package')\n")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), repo])}
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)


def test_the_cli_names_a_shadowing_package_instead_of_importing_it(tmp_path):
    result = _run("import sys; from facealign import cli; sys.exit(cli.main(['config', '-h']))",
                  tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"serving (found at {tmp_path / 'serving'}" in result.stderr
    assert "the wrong serving package" not in result.stderr


def test_the_api_names_a_shadowing_package(tmp_path):
    result = _run("import facealign\n"
                  "try:\n    facealign.load\nexcept ImportError as exc:\n    print(exc)\n",
                  tmp_path)
    assert result.returncode == 0, result.stderr
    assert "shadowed or missing: serving (found at" in result.stdout
