stackproc-local generate stack.tif --shape 64x512x512 --type uint16       # a sample stack
stackproc-local preview stack.tif --op gaussian:ksize=5 --op clahe:clip=1,2,4 \
    --slices 2 --roi 128,128,256,256 -o preview.png    # 2 slices, 3 clip limits side by side
