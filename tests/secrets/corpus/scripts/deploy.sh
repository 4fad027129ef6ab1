#!/bin/sh
set -eu
export DB_PASSWORD="SWp9s9QLLXIxNQVbF5"
mysql -u root -pjRJpadOjgTTLIJKuYO -e 'create database billing'
curl -fsS -u admin:NOFEHvNSiNSsOZub8n https://nexus.corp.internal/service/rest/v1/status
sshpass -p 'jlBkbP8fXs6lnpxwUq' scp build.tgz deploy@10.0.0.5:/srv/releases/
billing-cli sync --token ICGkqX6ifbol1PpN9p --verbose
git clone https://deploy:Owftjp2UHHHnGeOCIX@git.corp.internal/billing/app.git
