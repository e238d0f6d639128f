"""What the benchmark commands of scripts/ share, imported by them and run by none of them
directly: processes and fresh databases (``support``, ``databases``, ``measures``), the
results and their report, the references' ceilings, a PostgreSQL server's work
(``pgserver``), dlt's side of ``bench_dlt.py`` (``dlt_pipeline``, its own process) and the
envelope's cells. The commands stay in scripts/ itself, where the docs and the Makefile
run them; a command puts scripts/ on ``sys.path`` as it starts, so ``benchkit`` imports."""
