"""The shipped preference set (``train.jsonl``, ``test.jsonl``); see README.md here and
:mod:`studio.judging.prefset`, which loads and imports it."""
