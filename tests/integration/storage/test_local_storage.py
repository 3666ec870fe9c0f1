"""LocalStorage on a real directory: atomic writes, symlink escapes, sidecars and health."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from dtpyfw.core.errors import InvalidKey, ObjectNotFound, StorageError, StorageUnavailable
from dtpyfw.storage import LocalStorage, LocalStorageSettings, StorageContainer


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The storage root, inside the test's temp directory."""
    return tmp_path / "root"


@pytest.fixture
def store(root: Path) -> LocalStorage:
    """A LocalStorage over ``root``."""
    return LocalStorage(root)


class BreaksMidway(io.RawIOBase):
    """Hands out ``good`` bytes, then fails like a dropped upload."""

    def __init__(self, good: int) -> None:
        self.left = good

    def readable(self) -> bool:
        """Raw streams must say they can be read."""
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        """Fill ``buffer`` until ``good`` bytes were given, then raise."""
        if self.left == 0:
            raise ConnectionResetError("client went away")
        count = min(len(buffer), self.left, 1000)
        buffer[:count] = b"n" * count
        self.left -= count
        return count


def every_file(root: Path) -> list[str]:
    """Every file under ``root``, hidden ones included, relative and sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_root_is_created(root: Path) -> None:
    """The root directory is created on construction."""
    LocalStorage(root / "nested")
    assert (root / "nested").is_dir()


def test_objects_are_plain_files(store: LocalStorage, root: Path) -> None:
    """An object is a file at root/key; sidecars hide under .dtpyfw-meta."""
    store.put("a/b.txt", b"hi", metadata={"k": "v"})
    assert (root / "a" / "b.txt").read_bytes() == b"hi"
    assert every_file(root) == [".dtpyfw-meta/a/b.txt", "a/b.txt"]
    assert [info.key for info in store.list()] == ["a/b.txt"]


def test_crash_mid_put_keeps_the_old_object(store: LocalStorage, root: Path) -> None:
    """A put whose stream fails halfway leaves the old object and no temp file."""
    store.put("doc.txt", b"original", metadata={"v": "1"})
    before = every_file(root)
    with pytest.raises(ConnectionResetError):
        store.put("doc.txt", BreaksMidway(5000))  # type: ignore[arg-type]
    assert store.get("doc.txt") == b"original"
    assert store.stat("doc.txt").metadata == {"v": "1"}
    assert every_file(root) == before


def test_crash_mid_put_of_a_new_key_leaves_nothing(store: LocalStorage, root: Path) -> None:
    """A failed first write of a key leaves no object and no temp file."""
    with pytest.raises(ConnectionResetError):
        store.put("new/doc.txt", BreaksMidway(10))  # type: ignore[arg-type]
    assert not store.exists("new/doc.txt")
    assert every_file(root) == []


def test_symlinked_directory_out_of_root_is_rejected(
    store: LocalStorage, root: Path, tmp_path: Path
) -> None:
    """A key reaching outside the root through a symlinked directory is InvalidKey."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"s3cret")
    (root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidKey, match="outside the storage root"):
        store.get("link/secret")
    with pytest.raises(InvalidKey, match="outside the storage root"):
        store.put("link/planted", b"x")
    with pytest.raises(InvalidKey, match="outside the storage root"):
        list(store.list("link/"))
    assert not (outside / "planted").exists()
    assert [info.key for info in store.list()] == []


def test_symlinked_file_out_of_root_is_rejected(
    store: LocalStorage, root: Path, tmp_path: Path
) -> None:
    """A symlinked file pointing outside the root is neither readable nor listed."""
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"s3cret")
    (root / "leak.txt").symlink_to(secret)
    store.put("fine.txt", b"ok")
    with pytest.raises(InvalidKey):
        store.get("leak.txt")
    with pytest.raises(InvalidKey):
        store.delete("leak.txt")
    assert secret.exists()
    assert [info.key for info in store.list()] == ["fine.txt"]


def test_symlink_inside_the_root_is_followed(store: LocalStorage, root: Path) -> None:
    """A symlink that stays inside the root is an ordinary path."""
    store.put("real/file", b"data")
    (root / "alias").symlink_to(root / "real", target_is_directory=True)
    assert store.get("alias/file") == b"data"


def test_reserved_names_are_rejected(store: LocalStorage, root: Path) -> None:
    """Keys reaching a .dtpyfw- name, directly or through a symlink, are rejected."""
    store.put("a", b"x")
    (root / "sneaky").symlink_to(root / ".dtpyfw-meta", target_is_directory=True)
    for key in [".dtpyfw-meta/x", "b/.dtpyfw-tmp-1", "sneaky/a"]:
        with pytest.raises(InvalidKey, match="reserved"):
            store.put(key, b"x")
    assert store.stat("a").metadata == {}
    assert [info.key for info in store.list()] == ["a"]


def test_missing_key_chains_the_os_error(store: LocalStorage) -> None:
    """ObjectNotFound carries the FileNotFoundError it came from."""
    with pytest.raises(ObjectNotFound) as info:
        store.get("missing")
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_key_under_an_object_collides(store: LocalStorage) -> None:
    """On disk a key cannot be an object and a 'directory' at once."""
    store.put("a", b"x")
    with pytest.raises(StorageError, match="collides"):
        store.put("a/b", b"y")
    assert store.get("a") == b"x"


def test_empty_directories_are_removed(store: LocalStorage, root: Path) -> None:
    """Deleting or moving the last object of a directory removes the directory."""
    store.put("x/y/z", b"1")
    store.put("p/q", b"2")
    store.delete("x/y/z")
    store.move("p/q", "r")
    assert sorted(p.name for p in root.iterdir()) == [".dtpyfw-meta", "r"]
    assert sorted(p.name for p in (root / ".dtpyfw-meta").iterdir()) == ["r"]


def test_file_changed_behind_the_store_gets_a_fresh_etag(store: LocalStorage, root: Path) -> None:
    """A file rewritten by someone else no longer uses the stale sidecar."""
    store.put("f.txt", b"one", metadata={"k": "v"})
    (root / "f.txt").write_bytes(b"two, longer")
    info = store.stat("f.txt")
    assert info.etag == hashlib.md5(b"two, longer", usedforsecurity=False).hexdigest()
    assert (info.size, info.metadata) == (11, {})


def test_files_put_there_by_hand_are_objects(store: LocalStorage, root: Path) -> None:
    """A file without a sidecar is listed with a computed etag and a guessed type."""
    (root / "manual").mkdir()
    (root / "manual" / "page.html").write_bytes(b"<p>")
    (info,) = store.list()
    assert info.key == "manual/page.html"
    assert info.content_type == "text/html"
    assert info.etag == hashlib.md5(b"<p>", usedforsecurity=False).hexdigest()


def test_written_files_honour_the_umask(store: LocalStorage, root: Path) -> None:
    """Objects get ordinary permissions, not the 0600 of a mkstemp file."""
    store.put("perm", b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert (root / "perm").stat().st_mode & 0o777 == 0o666 & ~umask


def test_health_check_fails_when_the_root_is_gone(root: Path) -> None:
    """health_check raises StorageUnavailable once the root directory disappears."""
    container = StorageContainer(settings=LocalStorageSettings(root=root))
    container.health_check()
    root.rmdir()
    with pytest.raises(StorageUnavailable, match="not a directory"):
        container.health_check()


def test_named_store_failure_names_the_store(tmp_path: Path) -> None:
    """A failing named store is reported under its name."""
    settings = LocalStorageSettings.model_validate(
        {
            "root": str(tmp_path / "main"),
            "stores": {"avatars": {"backend": "local", "root": str(tmp_path / "avatars")}},
        }
    )
    container = StorageContainer(settings=settings)
    container.health_check()
    (tmp_path / "avatars").rmdir()
    with pytest.raises(StorageUnavailable, match="store 'avatars'"):
        container.health_check()
