"""Copies on a file system that shares extents (a real XFS, made on a loop device) are clones:
push's blobs and pull's files take no space and no copy, yet stay independent files."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeteer.codec.blobstore import LocalBlobStore, clone_file, content_key, copy_durably
from pipeteer.codec.claimcheck import ClaimCheck


@pytest.fixture
def xfs(tmp_path: Path) -> Iterator[Path]:
    """A freshly made XFS (reflink=1) mounted on a loop device; skipped where that cannot be done."""
    if os.geteuid() != 0 or shutil.which("mkfs.xfs") is None:
        pytest.skip("needs root and mkfs.xfs (xfsprogs) to make a real XFS on a loop device")
    image, mnt = tmp_path / "xfs.img", tmp_path / "xfs"
    with open(image, "wb") as f:
        f.truncate(512 << 20)  # sparse: XFS wants at least 300 MB
    mnt.mkdir()
    made = subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], capture_output=True, text=True)
    mounted = made.returncode == 0 and subprocess.run(
        ["mount", "-o", "loop", str(image), str(mnt)], capture_output=True, text=True
    ).returncode == 0
    if not mounted:
        pytest.skip(f"cannot make or mount an XFS loop device here: {made.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def used(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def test_copies_are_clones_on_xfs_and_stay_independent(xfs: Path, tmp_path: Path) -> None:
    data = os.urandom(32 << 20)
    src = xfs / "photo.png"
    src.write_bytes(data)
    os.sync()
    before = used(xfs)
    assert copy_durably(src, xfs / "copy.png") == "clone"
    os.sync()
    assert used(xfs) - before < 1 << 20  # 32 MiB copied, under 1 MiB more space used: shared extents
    (xfs / "copy.png").write_bytes(b"edited")  # writing the copy leaves the original as it was
    assert src.read_bytes() == data
    # where extents cannot be shared (ext4, or across file systems) it is a plain copy
    assert copy_durably(src, tmp_path / "elsewhere.png") == "copy"
    assert (tmp_path / "elsewhere.png").read_bytes() == data


def test_push_and_pull_paths_clone_blobs_and_outputs_on_xfs(xfs: Path) -> None:
    cc = ClaimCheck(LocalBlobStore(xfs / "blobs"), threshold=1024)
    photo = xfs / "in.png"
    data = os.urandom(16 << 20)
    photo.write_bytes(data)
    os.sync()
    before = used(xfs)
    light = cc.dehydrate(cc.file_ref(photo))  # push: the blob, verified by its hash
    cc.export(light, xfs / "out.png", id="p", field="(value)")  # pull: the output file, verified
    os.sync()
    assert used(xfs) - before < 2 << 20  # two 16 MiB files more, no data written
    assert (xfs / "out.png").read_bytes() == data and cc.store.path(content_key(data)).read_bytes() == data
    assert os.stat(xfs / "out.png").st_ino != os.stat(photo).st_ino  # files of their own, not links


def test_clone_file_leaves_an_empty_target_where_it_cannot(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x" * 100)
    cloned = clone_file(tmp_path / "a", tmp_path / "b")  # (ext4 or tmpfs here: no; XFS or btrfs: yes)
    assert (tmp_path / "b").read_bytes() == (b"x" * 100 if cloned else b"")
    with pytest.raises(FileNotFoundError):
        clone_file(tmp_path / "missing", tmp_path / "c")
