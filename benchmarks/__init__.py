"""The pipeline's benchmarks, run from the repository root as ``python -m benchmarks.NAME``.

Shared modules, lowest first: :mod:`~benchmarks.options` (command-line option types, and
the one line that names ``--quick`` as make takes it), :mod:`~benchmarks.stats` (medians and
ranges), :mod:`~benchmarks.timing` (device steps with CUDA events, wall clocks around
synchronised work),
:mod:`~benchmarks.machine` (facts about this host), :mod:`~benchmarks.rawzarr` (Zarr arrays
read from their files with numcodecs, independently of the pipeline and of zarr-python),
:mod:`~benchmarks.checks` (outputs compared with NumPy, bit for bit), :mod:`~benchmarks.data`
(the inputs), :mod:`~benchmarks.clusters` (clusters built with the pipeline's own cluster
code), :mod:`~benchmarks.pipelines` (the pipeline run in-process and as a command),
:mod:`~benchmarks.ceilings` (what the hardware and codecs allow), :mod:`~benchmarks.peers`
(the programs a user writes from the Dask, Zarr and dask-cuda docs) and
:mod:`~benchmarks.report` (figures, tables, charts). The benchmarks on top of them:
:mod:`~benchmarks.bench` (``make bench``), :mod:`~benchmarks.seed` (``make bench-seed``),
:mod:`~benchmarks.scaling` (``make bench-scaling``), :mod:`~benchmarks.sweep`
(``make bench-sweep``).

Only :mod:`~benchmarks.machine`, :mod:`~benchmarks.clusters` and
:mod:`~benchmarks.pipelines` import the ``pipeline`` package.
"""
