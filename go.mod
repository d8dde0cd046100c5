module github.com/tollgate/tollgate

go 1.26.0

require (
	github.com/d--j/go-milter v0.10.2 // indirect
	github.com/emersion/go-message v0.18.2 // indirect
	github.com/prometheus/client_golang v1.25.0 // indirect
	go.uber.org/goleak v1.3.0 // indirect
	golang.org/x/text v0.42.0 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)
