#!/bin/sh
set -eu
docker login billingacr.azurecr.io -u billingacr -p IQVM8r1JZAgcd3momr4/VNiT3WX9KtJH58IzKgtZc/+ACRBCZDOa
docker push billingacr.azurecr.io/billing:1.4.2
az acr login -n legacyacr --username legacyacr && docker login legacyacr.azurecr.io -u legacyacr --password TOYzyhYZpzxbUwPPag4LuPmq2jd30eQw
