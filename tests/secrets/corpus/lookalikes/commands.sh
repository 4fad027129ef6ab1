#!/bin/sh
echo "$CI_REGISTRY_PASSWORD" | docker login -u ci --password-stdin registry.corp.internal
mysql -u root -p -e 'select 1'
mysql -u root -p"$MYSQL_ROOT_PASSWORD" billing
curl -u "$NEXUS_USER:$NEXUS_PASSWORD" https://nexus.corp.internal/
sshpass -e scp a b
billing-cli --token "$(cat /run/secrets/token)"
docker run -u 1000:1000 -p 8080:8080 billing
perldoc -u Some::Module
vault login --token-file /run/secrets/vault
