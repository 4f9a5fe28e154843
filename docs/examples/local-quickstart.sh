stackproc-local generate stack.tif --shape 64x1024x1024 --type uint16      # a sample stack
stackproc-local run --input stack.tif --output blurred.tif \
    --op gaussian:ksize=5 --op clahe:clip=2 --compression deflate
stackproc-local run --input stack.tif --output small.ome.zarr \
    --op resize:scale=0.5 --pyramid 2        # for napari, Fiji/MoBIE, neuroglancer
stackproc-local ops                          # every operation and its parameters
