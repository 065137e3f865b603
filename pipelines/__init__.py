"""The end-to-end pipeline: two image folders -> a served model (see pipelines/local.py, pipelines/demo.py).

pipeline_lib (pure wiring: create_pipeline), runner (execution with lineage, caching, resume), lineage_lib /
lineage (the SQLite lineage store and its CLI), fingerprint (cache keys), demo_data / demo_lib / demo (the
offline built-in demo). Nothing else in the project imports this package.
"""
