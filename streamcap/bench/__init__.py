"""``streamcap bench``: word error rate, per-word latency, caption stability and cost of the
streaming engine on real speech, next to an offline decode of the same model.

Pure parts: :mod:`.manifest` (inputs), :mod:`.sets` (choosing sets, per-set overrides, joined
clips), :mod:`.scoring` (normalisation, WER/CER), :mod:`.align` (word alignment),
:mod:`.latency` (delays and stability from timed events), :mod:`.continuity` (cuts: lost and
doubled words, stable words changed, final delays), :mod:`.stats`, :mod:`.targets` (the issue's
targets, cut figures per group), :mod:`.report` (results.json, report.md), :mod:`.compare`.
Shells: :mod:`.run` (model, runner, CPU), :mod:`.plots` (PNG), :mod:`.cli`. The figures are
defined in ``docs/bench.md``.
"""
