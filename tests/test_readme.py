"""The README's commands are the ones CI runs, and its Python example runs."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _commands():
    block = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    return [line.split("#")[0].strip() for line in block.strip().splitlines()]


def test_first_screen_has_the_two_commands():
    main_job, tests = _commands()
    assert main_job == "pip install -e . && mtl-keras train zoo/census_mmoe.yaml"
    assert tests.endswith("python -m pytest -n 2")  # two pytest-xdist workers, one per CI core
    assert (ROOT / "zoo" / "census_mmoe.yaml").exists()


def test_ci_runs_the_readme_test_command_verbatim():
    _, tests = _commands()
    assert tests in (ROOT / ".ci" / "run").read_text().splitlines()


def test_python_example_runs(tmp_path):
    code = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    assert len(code.strip().splitlines()) <= 10
    code = code.replace("synthetic_mmoe(p=0.5)", "synthetic_mmoe(p=0.5, n=256, n_validation=64, n_test=64)")
    code = code.replace("epochs=5", "epochs=1, verbose=0")
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "y1_loss" in result.stdout
    assert (tmp_path / "saved_models" / "mmoe" / "1" / "saved_model.pb").exists()


def test_cli_help_lists_the_commands():
    result = subprocess.run(
        [sys.executable, "-m", "mtl_keras.cli", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0
    for command in ("init", "train", "evaluate", "export", "list"):
        assert command in result.stdout
