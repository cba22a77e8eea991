"""Group commit for labels: many request threads hand votes to one writer thread, which stores whatever has
queued up in one transaction (``Store.add_votes_bulk``) and only then answers each request.

A DuckDB transaction costs a few milliseconds whatever its size, so one vote per transaction caps a server at a
few hundred votes a second on an idle machine and far fewer while a generation runs. Batching whatever arrived
during the previous commit keeps a lone vote as fast as a direct write and lets many concurrent votes share
one commit. The store applies its own rules (one label per annotator per comparison, sizes, text limits); a
batch the store refuses is split in halves until the bad vote is alone, so it gets its own error and the
others are saved.
No gradio here.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from storage import Store, StoreError


@dataclass(frozen=True)
class Saved:
    """A stored label: its vote id, and whether it replaced this annotator's earlier label on the comparison."""

    vote_id: int
    replaced: bool


@dataclass(frozen=True)
class _Label:
    comparison_id: int
    annotator: str
    choice: str | None
    ranks: tuple[int, ...] | None
    comment: str | None
    done: Future[Saved]


_STOP = object()
# Measured on the 2-core dev machine: add_vote takes 3-8 ms, add_votes_bulk 20-30 ms whatever its size (it
# stages the batch in temp tables). Up to this many queued votes go one by one; more go in one bulk call.
SINGLE_MAX = 4


class LabelWriter:
    """One writer thread per store. ``add(...)`` blocks until the vote is committed; ``submit(...)`` returns a
    ``concurrent.futures.Future`` (await it with ``asyncio.wrap_future``)."""

    def __init__(self, store: Store, *, max_batch: int = 512, single_max: int = SINGLE_MAX) -> None:
        self.store = store
        self.max_batch = max_batch
        self.single_max = single_max
        self._queue: queue.SimpleQueue[_Label | object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="label-writer", daemon=True)
        self._closed = False
        self.batches = 0  # commits so far (the bench reports votes per commit)
        self.votes = 0
        self._thread.start()

    def submit(
        self,
        comparison_id: int,
        annotator: str,
        *,
        choice: str | None = None,
        ranks: Sequence[int] | None = None,
        comment: str | None = None,
    ) -> Future[Saved]:
        """Queue a pairwise ``choice`` ('A', 'B', 'tie', 'both_bad') or a ``ranks`` list (1 = best)."""
        if (choice is None) == (ranks is None):
            raise StoreError("a label is either a choice or a ranking, not both or neither")
        done: Future[Saved] = Future()
        if self._closed:
            raise StoreError("the label writer is closed")
        label = _Label(
            comparison_id, annotator, choice, tuple(ranks) if ranks is not None else None, comment, done
        )
        self._queue.put(label)
        return done

    def add(self, comparison_id: int, annotator: str, **kw: object) -> Saved:
        return self.submit(comparison_id, annotator, **kw).result()  # type: ignore[arg-type]

    def close(self, timeout: float = 10.0) -> None:
        """Store what is queued, then stop the thread."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            self._thread.join(timeout)

    # -- the writer thread --------------------------------------------------------------------------------
    def _run(self) -> None:
        stop = False
        while not stop:
            batch: list[_Label] = []
            item = self._queue.get()
            while True:  # whatever queued up while the previous commit ran goes into this one
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)  # type: ignore[arg-type]
                if len(batch) >= self.max_batch:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._commit(batch)

    def _commit(self, batch: list[_Label]) -> None:
        if len(batch) <= self.single_max:  # a few votes: a small transaction each beats one bulk call
            for label in batch:
                self._write_one(label)
            return
        try:
            replaced = self._already_labelled(batch)
            ids = self.store.add_votes_bulk(_table(batch))
        except StoreError:  # a bad row: split the batch until each bad vote is alone and gets its own error
            half = len(batch) // 2
            self._commit(batch[:half])
            self._commit(batch[half:])
            return
        except BaseException as e:  # every waiting request must hear about it
            _fail(batch, e)
            return
        self.batches += 1
        self.votes += len(batch)
        for label, vote_id, was in zip(batch, ids, replaced, strict=True):
            _answer(label, Saved(int(vote_id), was))

    def _write_one(self, label: _Label) -> None:
        try:
            was = self._already_labelled([label])[0]
            vote_id = self._one(label)
        except BaseException as e:
            _fail([label], e)
            return
        self.batches += 1
        self.votes += 1
        _answer(label, Saved(int(vote_id), was))

    def _one(self, label: _Label) -> int:
        if label.choice is not None:
            return self.store.add_vote(
                label.comparison_id, label.choice, label.annotator, comment=label.comment
            )
        return self.store.add_ranking(
            label.comparison_id, list(label.ranks or ()), label.annotator, comment=label.comment
        )

    def _already_labelled(self, batch: list[_Label]) -> list[bool]:
        """For each label: did its annotator already have a label on that comparison (stored, or earlier in
        this batch)? One query, in the writer thread, so no other vote lands in between."""
        stored = self.store.labelled([(b.comparison_id, b.annotator) for b in batch])
        out = []
        for b in batch:
            key = (b.comparison_id, b.annotator)
            out.append(key in stored)
            stored.add(key)
        return out


def _table(batch: list[_Label]):  # -> pyarrow.Table
    import pyarrow as pa

    return pa.table(
        {
            "comparison_id": pa.array([b.comparison_id for b in batch], pa.int64()),
            "annotator": pa.array([b.annotator for b in batch], pa.string()),
            "choice": pa.array([b.choice for b in batch], pa.string()),
            "ranks": pa.array(
                [list(b.ranks) if b.ranks is not None else None for b in batch], pa.list_(pa.int32())
            ),
            "comment": pa.array([b.comment for b in batch], pa.string()),
        }
    )


def _answer(label: _Label, saved: Saved) -> None:
    with contextlib.suppress(Exception):  # a caller that gave up (a cancelled future) is fine
        label.done.set_result(saved)


def _fail(batch: list[_Label], error: BaseException) -> None:
    for label in batch:
        with contextlib.suppress(Exception):
            label.done.set_exception(error)
