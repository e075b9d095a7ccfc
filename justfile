ci:
	bash .ci/run

check-examples:
	cargo run -q -p duet -- compile plans/quickstart.yaml --inventory plans/machines/320ma.yaml
