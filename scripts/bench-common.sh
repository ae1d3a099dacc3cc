# Shared by the benchmark scripts that run the agent against examples/bench_endpoint.rs over TLS.
# Sourced, not run.

# A throw-away certificate authority in $1 (ca.pem, trusted by the agent through SSL_CERT_FILE)
# and the endpoint's certificate signed by it (cert.pem, key.pem).
make_certs() {
  local work=$1
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=bench-ca -keyout "$work/ca-key.pem" -out "$work/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout "$work/key.pem" -out "$work/req.pem" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > "$work/ext.cnf"
  openssl x509 -req -in "$work/req.pem" -CA "$work/ca.pem" -CAkey "$work/ca-key.pem" -CAcreateserial -days 1 \
    -extfile "$work/ext.cnf" -out "$work/cert.pem" 2>/dev/null
}

# A loopback port free now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# The value of a key of the endpoint's counts file $1 (0 before the first request).
count_of() {
  local v
  v=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2" 2>/dev/null || true)
  echo "${v:-0}"
}
