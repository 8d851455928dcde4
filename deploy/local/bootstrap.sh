#!/usr/bin/env bash
# Makes this machine ready to run Sluice and its tests: Debian packages (RabbitMQ,
# bubblewrap, ...), a running RabbitMQ, and the virtualenv in .venv with Sluice installed.
# Safe to run again: each step is skipped when already done. Needs root for apt and cgroups.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
say() { printf 'bootstrap: %s\n' "$*" >&2; }

# Extra package lists may be named as arguments (bin/sluice test adds the test guest's).
packages=(rabbitmq-server bubblewrap libseccomp2)
for list in deploy/local/apt-packages.txt "$@"; do
  [[ -f $list ]] || continue
  while read -r pkg; do
    [[ -n "$pkg" && "$pkg" != \#* ]] && packages+=("$pkg")
  done < "$list"
done
missing=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm (the buf linter and the interop test's JavaScript client): Debian ships it apart
# from nodejs, NodeSource's nodejs includes it.
if ! command -v npm >/dev/null; then
  say "installing npm"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null
fi

# RabbitMQ: start it unless something already answers on the AMQP port.
amqp_port=${SLUICE_AMQP_PORT:-5672}
if ! (exec 3<>"/dev/tcp/127.0.0.1/$amqp_port") 2>/dev/null; then
  say "starting RabbitMQ"
  rabbitmq-server -detached
  timeout 120 rabbitmqctl await_startup >/dev/null
fi
# The management plugin's HTTP API: the queue depths operators read (unacked counts are
# known to it, not to AMQP). Enabled on a running broker without a restart.
if ! rabbitmq-plugins list -e -m 2>/dev/null | grep -qx rabbitmq_management; then
  say "enabling the RabbitMQ management plugin"
  rabbitmq-plugins enable -q rabbitmq_management >/dev/null
fi

# PostgreSQL: the store of several control planes, and the tests' second store (they make
# databases of their own as user postgres on 127.0.0.1, without a password). Installed and
# started unless something already answers on its port; a cluster installed here lets local
# connections in without a password (a development or CI machine, never a deployment).
# Only for the tests (bin/sluice test asks): `sluice up` runs on SQLite.
pg_port=${SLUICE_POSTGRES_PORT:-5432}
if [[ ${SLUICE_BOOTSTRAP_POSTGRESQL:-0} == 1 ]] \
    && ! (exec 3<>"/dev/tcp/127.0.0.1/$pg_port") 2>/dev/null; then
  if ! dpkg -s postgresql >/dev/null 2>&1; then
    say "installing PostgreSQL"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      postgresql >/dev/null
    for hba in /etc/postgresql/*/main/pg_hba.conf; do
      sed -i -E 's/^(local|host)(\s+all\s+all\s+.*)\s(peer|scram-sha-256|md5)$/\1\2 trust/' \
        "$hba"
    done
  fi
  say "starting PostgreSQL"
  version=$(ls /etc/postgresql | sort -V | tail -1)
  pg_ctlcluster "$version" main start
  timeout 60 bash -c "until pg_isready -q -h 127.0.0.1 -p $pg_port; do sleep 0.5; done"
fi

# Python: a virtualenv with Sluice and its dev tools, reinstalled when pyproject changes.
python=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  say "creating .venv"
  if ! "$python" -m venv .venv 2>/dev/null; then
    apt-get install -y -qq python3-venv >/dev/null
    rm -rf .venv && "$python" -m venv .venv
  fi
fi
stamp=.venv/.sluice-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  say "installing Sluice into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch "$stamp"
fi
