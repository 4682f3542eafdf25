"""CI must run exactly the README's test command, and the README's commands must name things that exist."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks(text):
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    test_cmds = [b.strip() for b in _bash_blocks(readme) if "pytest" in b]
    assert test_cmds, "README has no test command"
    ci_lines = [l for l in (ROOT / ".ci/run").read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert test_cmds[0] in ci_lines


def test_readme_main_job_exists():
    readme = (ROOT / "README.md").read_text()
    main = [b for b in _bash_blocks(readme) if "r1lab run" in b][0]
    yaml_path = re.search(r"r1lab run (\S+\.yaml)", main).group(1)
    assert (ROOT / yaml_path).exists(), yaml_path
