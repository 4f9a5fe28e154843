stackproc-local generate sheet.tif --shape 48x256x256 --type uint16    # a light-sheet stack
# the illumination's fall-off taken off (the flat estimated from the stack, the camera's dark
# level 50), stripes off, a 3-D smoothing (z steps 2.5x the pixel size), into OME-Zarr
stackproc-local run --input sheet.tif --output sheet.ome.zarr \
    --op flatfield:dark=50,sigma=40 --op destripe --op gaussian3d:sigma=2,sigma_z=0.8
