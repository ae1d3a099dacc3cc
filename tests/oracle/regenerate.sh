#!/usr/bin/env bash
# Recomputes tests/data/golden/*.expected with java.util.regex (see README.md beside this file).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
golden="$here/../data/golden"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
javac -d "$work" "$here/JavaRegexOracle.java"
fields_COMMONAPACHELOG=host,ident,authuser,datetime,request,response,bytes
fields_COMBINEDAPACHELOG=host,ident,authuser,datetime,request,response,bytes,referer,agent
fields_APACHEERRORLOG=timestamp,module,severity,processid,threadid,client,message
fields_SYSLOG=timestamp,hostname,program,processid,message
fields_RFC3339SYSLOG=timestamp,hostname,program,processid,message
for f in COMMONAPACHELOG COMBINEDAPACHELOG APACHEERRORLOG SYSLOG RFC3339SYSLOG; do
  dash=0
  case $f in *APACHE*) dash=1 ;; esac
  fields="fields_$f"
  java -cp "$work" JavaRegexOracle "$here/$f.pattern" "${!fields}" "$dash" "$golden/mixed.log" > "$golden/$f.expected"
done
echo "regenerated $(ls "$golden"/*.expected | wc -l) files"
