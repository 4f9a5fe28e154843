# A CA, and a server certificate naming every address clients dial (subjectAltName)
openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj /CN=lab-ca \
    -keyout ca.key -out ca.pem
openssl req -newkey rsa:2048 -nodes -subj /CN=imaging-server \
    -keyout server.key -out server.csr
printf 'subjectAltName=DNS:imaging-server,DNS:localhost,IP:127.0.0.1\n' > san.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 365 \
    -extfile san.ext -out server.pem
# The callers: one "NAME TOKEN [admin]" per line, the file readable by the server only
printf 'alice %s\nfacility %s admin\n' "$(openssl rand -hex 24)" "$(openssl rand -hex 24)" \
    > tokens && chmod 600 tokens
mkdir -p stacks && stackproc-local generate stacks/in.tif --shape 16x256x256
stackprocd --data-root stacks --listen 0.0.0.0:50051 --auth-token-file tokens \
    --tls-cert server.pem --tls-key server.key &
# On a lab machine: the CA and alice's token (from the environment: ps does not show it)
export STACKPROC_SERVER=127.0.0.1:50051 STACKPROC_TLS_CA=ca.pem
export STACKPROC_TOKEN=$(awk '$1 == "alice" { print $2 }' tokens)
until stackproc health; do sleep 0.2; done
stackproc submit --input in.tif --op invert --output inverted.tif --wait
kill %1; wait
