"""napari front end of napari-gmm: dock widgets and sample data.

This sub-package is the only place that imports napari, magicgui, qtpy or a Qt canvas of
matplotlib; ``import napari_gmm`` never imports it. napari finds its contents through the
``napari.yaml`` manifest shipped inside the package (entry point ``napari.manifest``), so nothing
is imported here eagerly: each contribution is loaded by its ``python_name`` when first used.
"""
