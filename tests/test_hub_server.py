"""The loopback Hub's download side answers the real clients as the Hub does: files by revision,
quoted paths, and each kind of 404 under the code that the clients turn into their own exception."""
from __future__ import annotations

import pytest

from agorabench.testing.hub_server import FakeHubServer
from tests.conftest import download_from


def test_downloads_by_revision_with_quoted_paths_and_the_hubs_errors(tmp_path, monkeypatch):
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    with FakeHubServer() as hub:
        download_from(hub, monkeypatch, tmp_path)
        first = hub.add("datasets/org/data", {"data/a b.txt": b"one"})
        get = lambda name, revision="main": open(hf_hub_download(  # noqa: E731
            "org/data", name, repo_type="dataset", revision=revision)).read()
        assert get("data/a b.txt") == get("data/a b.txt", first) == "one"  # quoted on the way, by commit too
        second = hub.add("datasets/org/data", {"data/a b.txt": b"two"})
        assert second != first and get("data/a b.txt") == "two"
        with pytest.raises(EntryNotFoundError):
            get("data/missing.txt")
        with pytest.raises(RevisionNotFoundError):  # a tag it never had
            get("data/a b.txt", "v1.0")
        with pytest.raises(RepositoryNotFoundError):
            hf_hub_download("org/none", "x.txt", repo_type="dataset")
        # Canary: the same bytes committed again are still a new commit, not the old one's id.
        assert hub.add("datasets/org/data", {"data/a b.txt": b"one"}) not in (first, second)
