"""A dataset's images and labels in flat arrays, so that memory grows by tens of bytes an image, not by the ~440
of a Python dict per record or the N x L of a dense label matrix (200k images x 1,000 categories: 200 MB of bool).

`ImageTable` is a read-only sequence of the file's image records: `table[n]` builds the record's dict, equal to the
one in the file (same keys in the same order, same values), so writers that copy records copy them exactly.
`SparseLabels` holds the annotated (image, category) pairs in CSR form: row n's columns are
`indices[indptr[n]:indptr[n + 1]]`, sorted, with the annotation score and the observed flag beside each.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Sequence

import numpy as np

from spml.errors import SpmlError

# lone surrogates (`"\ud800"` in a JSON file) are valid JSON strings; keep them through the round trip
_ENCODING, _ERRORS = "utf-8", "surrogatepass"
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)  # made once: json.dumps(..., separators=) makes one a call


class ImageTable(Sequence):
    """Image records as columns: ids (int64), file names packed in one UTF-8 buffer with offsets, and every other
    field as the compact JSON of its values, keyed by a shared layout (the record's keys in file order)."""

    def __init__(self, ids, names, name_offsets, layout_of, *, layouts, extras, extra_offsets):
        self.ids = ids
        self._names, self._name_offsets = names, name_offsets
        self._layout_of, self._layouts = layout_of, layouts
        self._extras, self._extra_offsets = extras, extra_offsets

    @classmethod
    def from_records(cls, records) -> "ImageTable":
        builder = ImageTableBuilder()
        for im in records:
            builder.add(im)
        return builder.build()

    def __len__(self) -> int:
        return len(self.ids)

    def file_name(self, n: int) -> str:
        a, b = self._name_offsets[n], self._name_offsets[n + 1]
        return self._names[a:b].tobytes().decode(_ENCODING, _ERRORS)

    def image_id(self, n: int) -> int:
        return int(self.ids[n])

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[n] for n in range(*index.indices(len(self)))]
        n = int(index)
        if n < 0:
            n += len(self)
        if not 0 <= n < len(self):
            raise IndexError(index)
        keys = self._layouts[self._layout_of[n]]
        a, b = self._extra_offsets[n], self._extra_offsets[n + 1]
        values = iter(json.loads(self._extras[a:b].tobytes().decode(_ENCODING, _ERRORS)) if b > a else ())
        special = {"id": int(self.ids[n]), "file_name": self.file_name(n)}
        return {k: special[k] if k in special else next(values) for k in keys}

    def __iter__(self):
        return (self[n] for n in range(len(self)))

    def __eq__(self, other):
        if isinstance(other, (ImageTable, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None

    def take(self, rows) -> "ImageTable":
        """The records at `rows`, in that order, as a new table."""
        rows = np.asarray(rows, dtype=np.int64)
        names, name_offsets = _gather(self._names, self._name_offsets, rows)
        extras, extra_offsets = _gather(self._extras, self._extra_offsets, rows)
        return ImageTable(self.ids[rows], names, name_offsets, self._layout_of[rows], layouts=self._layouts, extras=extras,
                          extra_offsets=extra_offsets)

    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.ids, self._names, self._name_offsets, self._layout_of, self._extras,
                                      self._extra_offsets))


def _gather(buffer: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The variable-length items `rows` of a packed buffer, packed again."""
    starts = offsets[rows].astype(np.int64)
    lengths = offsets[rows + 1] - starts
    new_offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_offsets[1:])
    # byte k of the new buffer is byte (k - new_offsets[item]) + starts[item] of the old one
    index = np.arange(new_offsets[-1], dtype=np.int64) - np.repeat(new_offsets[:-1] - starts, lengths)
    return buffer[index], new_offsets


class ImageTableBuilder:
    """Appends records one at a time (as a streaming parser yields them) without keeping their dicts."""

    def __init__(self):
        self.ids = array("q")
        self.names, self.name_offsets = bytearray(), array("q", [0])
        self.extras, self.extra_offsets = bytearray(), array("q", [0])
        self.layout_of = array("i")
        self.layouts: list[tuple] = []
        self._layout_index: dict[tuple, int] = {}

    def add(self, im: dict) -> None:
        """`im` must have an int `id` and a str `file_name` (checked by the caller, whose error names the file)."""
        try:
            self.ids.append(im["id"])
        except OverflowError:
            raise SpmlError(f"image id {im['id']} does not fit in 64 bits") from None
        self.names += im["file_name"].encode(_ENCODING, _ERRORS)
        self.name_offsets.append(len(self.names))
        keys = tuple(im)
        index = self._layout_index.get(keys)
        if index is None:
            index = self._layout_index[keys] = len(self.layouts)
            self.layouts.append(keys)
        self.layout_of.append(index)
        rest = [v for k, v in im.items() if k != "id" and k != "file_name"]
        if rest:
            self.extras += _ENCODER.encode(rest).encode(_ENCODING, _ERRORS)
        self.extra_offsets.append(len(self.extras))

    def __len__(self) -> int:
        return len(self.ids)

    def build(self) -> ImageTable:
        def arr(a, dtype, small=None):
            a = np.frombuffer(a, dtype=dtype) if len(a) else np.zeros(0, dtype)
            # offsets and layout numbers in 4 and 2 bytes where they fit: 10 bytes an image fewer
            return a.astype(small) if small is not None and (not len(a) or a.max() <= np.iinfo(small).max) else a

        return ImageTable(arr(self.ids, np.int64), arr(self.names, np.uint8), arr(self.name_offsets, np.int64, np.int32),
                          arr(self.layout_of, np.int32, np.uint16), layouts=self.layouts, extras=arr(self.extras, np.uint8),
                          extra_offsets=arr(self.extra_offsets, np.int64, np.int32))


class SparseLabels:
    """(N, L) annotated positives in CSR form, with each pair's score (max over its annotations, 1 where none is
    given), observed flag (any of its annotations has source "observed" or "verified", or none) and verified flag
    (any has source "verified"). Indexing by a slice or an array of rows gives the dense (rows, L) bool block, so
    it stands in for a dense matrix where rows are read in blocks. An image's observed negatives are a second
    SparseLabels without scores or flags (spml.data.coco.CocoDataset.negative_labels)."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, shape: tuple[int, int], scores: np.ndarray | None = None,
                 *, observed: np.ndarray | None = None, verified: np.ndarray | None = None):
        self.indptr, self.indices, self.shape = indptr, indices, shape
        self.pair_scores, self.pair_observed, self.pair_verified = scores, observed, verified

    @classmethod
    def from_pairs(cls, rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int], scores=None,
                   *, observed=None, verified=None) -> "SparseLabels":
        """Labels from (row, column) pairs in any order, duplicates merged."""
        rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
        key = rows * shape[1] + cols
        order = np.argsort(key, kind="stable")
        key = key[order]
        first = np.ones(len(key), dtype=bool)
        first[1:] = key[1:] != key[:-1]
        starts = np.flatnonzero(first)
        pair_scores = pair_observed = pair_verified = None
        if scores is not None:
            pair_scores = np.maximum.reduceat(np.asarray(scores, np.float32)[order], starts) if len(starts) else \
                np.zeros(0, np.float32)
        if observed is not None:
            pair_observed = np.logical_or.reduceat(np.asarray(observed, bool)[order], starts) if len(starts) else \
                np.zeros(0, bool)
        if verified is not None:
            pair_verified = np.logical_or.reduceat(np.asarray(verified, bool)[order], starts) if len(starts) else \
                np.zeros(0, bool)
        unique = key[first]
        # 4-byte row offsets while the pairs fit: a single-positive file's 200k images cost 0.8 MB less
        indptr = np.zeros(shape[0] + 1, dtype=np.int32 if len(unique) < 2 ** 31 else np.int64)
        np.cumsum(np.bincount(unique // shape[1], minlength=shape[0]), out=indptr[1:])
        return cls(indptr, (unique % shape[1]).astype(np.int32), shape, pair_scores, observed=pair_observed,
                   verified=pair_verified)

    @classmethod
    def from_dense(cls, positives: np.ndarray, scores: np.ndarray | None = None,
                   observed: np.ndarray | None = None) -> "SparseLabels":
        positives = np.asarray(positives, dtype=bool)
        r, c = np.nonzero(positives)
        return cls.from_pairs(r, c, positives.shape, None if scores is None else np.asarray(scores)[r, c],
                              observed=None if observed is None else np.asarray(observed)[r, c])

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nnz(self) -> int:
        return len(self.indices)

    def _rows(self, index) -> np.ndarray:
        if isinstance(index, slice):
            return np.arange(*index.indices(self.shape[0]), dtype=np.int64)
        rows = np.asarray(index)
        if rows.dtype == bool:
            return np.flatnonzero(rows)
        return np.where(rows < 0, rows + self.shape[0], rows).astype(np.int64)

    def _block(self, index, values: np.ndarray | None, dtype) -> np.ndarray:
        rows = self._rows(index)
        starts = self.indptr[rows].astype(np.int64)
        lengths = self.indptr[rows + 1] - starts
        out = np.zeros((len(rows), self.shape[1]), dtype=dtype)
        offsets = np.repeat(np.cumsum(lengths) - lengths - starts, lengths)
        pairs = np.arange(lengths.sum(), dtype=np.int64) - offsets  # positions in `indices` of the rows' pairs
        out[np.repeat(np.arange(len(rows)), lengths), self.indices[pairs]] = True if values is None else values[pairs]
        return out

    def __getitem__(self, index) -> np.ndarray:
        """Dense bool rows: a slice or an array of rows gives (rows, L); an int gives (L,)."""
        if np.ndim(index) == 0 and not isinstance(index, slice):
            return self._block([index], None, bool)[0]
        return self._block(index, None, bool)

    def scores_of(self, index) -> np.ndarray:
        """Dense float32 annotation scores of these rows (0 where no annotation; 1 where one gives no score)."""
        values = self.pair_scores if self.pair_scores is not None else np.ones(self.nnz, np.float32)
        return self._block(index, values, np.float32)

    def observed_of(self, index) -> np.ndarray:
        """Dense bool: pairs with an annotation whose source is "observed" or "verified" or none (all pairs where no
        annotation gives a source)."""
        return self._block(index, self.pair_observed, bool)

    def verified_of(self, index) -> np.ndarray:
        """Dense bool: pairs with an annotation whose source is "verified" (none where no flags are kept)."""
        return self._block(index, self.pair_verified if self.pair_verified is not None else np.zeros(self.nnz, bool), bool)

    def toarray(self) -> np.ndarray:
        return self[slice(None)]

    def column_counts(self) -> np.ndarray:
        """How many images have each category."""
        return np.bincount(self.indices, minlength=self.shape[1])

    def take(self, rows) -> "SparseLabels":
        rows = self._rows(rows)
        starts = self.indptr[rows].astype(np.int64)
        lengths = self.indptr[rows + 1] - starts
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        pairs = np.arange(indptr[-1], dtype=np.int64) - np.repeat(indptr[:-1] - starts, lengths)
        return SparseLabels(indptr, self.indices[pairs], (len(rows), self.shape[1]),
                            None if self.pair_scores is None else self.pair_scores[pairs],
                            observed=None if self.pair_observed is None else self.pair_observed[pairs],
                            verified=None if self.pair_verified is None else self.pair_verified[pairs])


class PackedStrings(Sequence):
    """A growing list of str in one UTF-8 buffer with offsets (an image list's file names while it is read)."""

    def __init__(self):
        self.data, self.offsets = bytearray(), array("q", [0])

    def append(self, s: str) -> None:
        self.data += s.encode(_ENCODING, _ERRORS)
        self.offsets.append(len(self.data))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, n):
        if isinstance(n, slice):
            return [self[k] for k in range(*n.indices(len(self)))]
        if n < 0:
            n += len(self)
        return self.data[self.offsets[n]:self.offsets[n + 1]].decode(_ENCODING, _ERRORS)
