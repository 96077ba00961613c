{{/* Egress rules shared by the operator and worker NetworkPolicies. */}}
{{- define "receipt-sync.dnsEgress" }}
    # DNS.
    - ports:
        - port: 53
          protocol: UDP
        - port: 53
          protocol: TCP
{{- end }}
{{- define "receipt-sync.storeEgress" }}
    # Redis (queue, heartbeats) and PostgreSQL (receipts).
    - ports:
        - port: {{ .Values.networkPolicy.egress.redisPort }}
          protocol: TCP
        - port: {{ .Values.networkPolicy.egress.postgresPort }}
          protocol: TCP
{{- end }}
