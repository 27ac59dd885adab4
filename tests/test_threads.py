"""Thread policy (issue 15): nested and overlapping torch thread requests are honoured."""

from __future__ import annotations

import threading

import pytest

torch = pytest.importorskip("torch")

from vmatch.errors import UsageError  # noqa: E402
from vmatch.threads import torch_threads  # noqa: E402


@pytest.fixture
def base_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield 2
    torch.set_num_threads(before)


def test_nested_request_is_honoured_and_the_outer_restored(base_threads):
    with torch_threads(3):
        assert torch.get_num_threads() == 3
        with torch_threads(1):  # PDQ's one-thread rule inside an index run's CNN setting
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 3
    assert torch.get_num_threads() == base_threads


def test_request_set_applies_only_while_in_force(base_threads):
    with torch_threads(3) as outer:
        with torch_threads(1):
            outer.set(4)  # the adaptive CNN count changes under an inner request: not applied yet
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 4
        outer.set(3)
        assert torch.get_num_threads() == 3
    assert torch.get_num_threads() == base_threads


def test_overlapping_requests_ending_out_of_order(base_threads):
    a, b = torch_threads(3), torch_threads(1)
    a.__enter__()
    b.__enter__()
    a.__exit__(None, None, None)  # the older request ends first: the newer stays in force
    assert torch.get_num_threads() == 1
    b.__exit__(None, None, None)
    assert torch.get_num_threads() == base_threads


def test_request_from_another_python_thread(base_threads):
    seen = []
    entered, release = threading.Event(), threading.Event()

    def worker():
        with torch_threads(1):
            seen.append(torch.get_num_threads())
            entered.set()
            release.wait(10)

    with torch_threads(3):
        t = threading.Thread(target=worker)
        t.start()
        assert entered.wait(10)
        release.set()
        t.join(10)
    assert seen == [1]
    assert torch.get_num_threads() == base_threads


def test_bad_count_is_refused():
    with pytest.raises(UsageError, match="thread count"):
        with torch_threads(0):
            pass
