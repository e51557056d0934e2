"""Flash geometries and their address packing: OCSSD 2.0 (groups, PUs, chunks,
sectors; ocssd20.py) and OCSSD 1.2 (channels, LUNs, planes, blocks, pages; ocssd12.py).
Below media/ (the image formats record a geometry) and the namespace kinds."""
