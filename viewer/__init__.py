"""The web viewer for shape fits: ``sine-fields view DIR [DIR ...]`` (viser, the version nerfstudio pins).

One job per module: ``run_folder`` loads and validates run folders, ``colours`` maps values to
colours, ``slicing`` samples a plane through a field, ``extraction`` re-meshes a field with
progress, ``panels`` formats the metrics panel, ``app`` wires them into a viser server.
Importing this package imports nothing heavy.
"""
