mkdir -p stacks/run42 && stackproc-local generate stacks/run42/stack.tif --shape 64x512x512
stackprocd --data-root stacks --state-dir state &       # 127.0.0.1:50051: this machine only
until stackproc health; do sleep 0.2; done
stackproc submit --input run42/stack.tif --op gaussian:ksize=5 --op clahe \
    --output run42/stack-clahe.tif --wait             # paths under the data root
job=$(stackproc submit --input run42/stack.tif --op resize:scale=0.5 --in-memory)
stackproc watch "$job" && stackproc download "$job" -o small.tif && stackproc delete "$job"
stackproc process stacks/run42/stack.tif -o blurred.tif --op gaussian:ksize=5  # streamed
stackproc list
kill %1; wait                                           # SIGTERM: a clean shutdown
