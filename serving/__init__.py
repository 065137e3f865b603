"""TF-Serving-compatible model server, gRPC client + CLI, warmup files and deploy configs.

Never imports models/ or components/: the server loads any SavedModel by its signatures and the client
speaks only TF Serving's wire protocol.
"""
