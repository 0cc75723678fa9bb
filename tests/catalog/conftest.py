"""The catalog's tests keep release files in a folder of their own."""

from __future__ import annotations

import pytest


@pytest.fixture
def app_config(tmp_path) -> dict:
    return {"RELEASE_FILES_DIR": str(tmp_path / "files")}


@pytest.fixture
def files_dir(app):
    from portal.services.catalog import files_root

    return files_root()
