"""Every UD- code the product can emit is listed in docs/errors.md, so agents can rely on it."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE = re.compile(r'"(UD-[A-Z0-9]+(?:-[A-Z0-9]+)*)"')


def documented() -> set[str]:
    text = (ROOT / "docs" / "errors.md").read_text()
    codes = set(re.findall(r"UD-[A-Z0-9-]*[A-Z0-9]", text))
    # "UD-GATE-TESTS-PASSED / -FAILED" lists siblings by suffix
    for line in text.splitlines():
        for head, tails in re.findall(r"(UD-[A-Z0-9-]+?)((?:\s*/\s*-[A-Z0-9-]+)+)", line):
            stem = head.rsplit("-", 1)[0]
            codes |= {stem + t.strip() for t in tails.split("/") if t.strip()}
    return codes


def test_every_code_in_the_product_is_documented():
    used = set()
    for path in (ROOT / "unified_delivery").rglob("*.py"):
        used |= set(CODE.findall(path.read_text()))
    docs = documented()
    # a prefix such as "UD-GATE-COST" (matched with startswith) is covered by its documented family
    missing = sorted(c for c in used - docs if not any(d.startswith(c + "-") for d in docs))
    assert not missing, f"add these codes to docs/errors.md: {missing}"
