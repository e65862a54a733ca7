"""A state class's Avro name does not depend on how its module was started (script, -m, import)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

STAGE = '''
from dataclasses import dataclass
from pipeteer.codec import codec_for

@dataclass
class Doc:
    text: str

if __name__ == "__main__":
    print(codec_for(Doc).name, codec_for(Doc).fingerprint.hex())
'''


def test_a_script_and_its_importers_agree_on_the_schema(tmp_path: Path) -> None:
    package = tmp_path / "shop"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "stage.py").write_text(STAGE)

    def run(*args: str, cwd: Path = tmp_path) -> str:
        return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()

    as_script = run("shop/stage.py")
    from_inside = run("stage.py", cwd=package)
    as_module = run("-m", "shop.stage")
    imported = run("-c", "from shop.stage import Doc; from pipeteer.codec import codec_for; "
                         "print(codec_for(Doc).name, codec_for(Doc).fingerprint.hex())")
    assert as_script == from_inside == as_module == imported
    assert as_script.startswith("shop.stage.Doc ")


def test_a_class_with_no_module_file_keeps_main() -> None:
    code = ("from dataclasses import dataclass\nfrom pipeteer.codec import codec_for\n"
            "@dataclass\nclass Doc:\n    text: str\nprint(codec_for(Doc).name)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "__main__.Doc"
