module oxitraffic

go 1.26.8

require (
	github.com/lib/pq v1.12.3
	gopkg.in/yaml.v3 v3.0.1
)
