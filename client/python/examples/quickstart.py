import stackproc, tifffile

stack = tifffile.imread("stack.tif")                  # (z, y, x): uint8, uint16 or float32
with stackproc.Client() as client:                    # STACKPROC_SERVER, else 127.0.0.1:50051
    blurred = client.process(stack, ["gaussian:ksize=5", "clahe:clip=2"], progress=True)
tifffile.imwrite("blurred.tif", blurred)
