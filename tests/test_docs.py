"""The README stays true: every parameter is documented, the two commands are where .ci/run reads them."""

from pathlib import Path

from dlsort.params import PARAMETERS

ROOT = Path(__file__).resolve().parents[1]


def test_every_parameter_is_in_the_readme_table_with_its_current_default_and_description():
    readme = (ROOT / "README.md").read_text()
    stale = [name for name, parameter in PARAMETERS.items()
             if f"| `{name}` | `{parameter.default!r}` | {parameter.description} |" not in readme]
    assert stale == []


def test_readme_commands_are_marked_for_ci():
    readme = (ROOT / "README.md").read_text()
    for marker in ("<!-- command: install-and-demo -->", "<!-- command: tests -->"):
        after = readme.split(marker, 1)[1].lstrip()
        assert after.startswith("```bash\n")
    assert "dlsort demo" in readme.split("<!-- command: install-and-demo -->", 1)[1].split("```")[1]
