"""`jaxvae explore`: serve the page that decodes the latent point under the pointer."""

from jaxvae.cli.startup import start_jax


def run(args) -> int:
    start_jax()
    from jaxvae.explore import make_server

    server = make_server(args.run_dir, args.host, args.port, dataset=args.dataset, data_dir=args.data_dir)
    print(f"exploring {args.run_dir} at {server.url} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (see `interruptible`): stopping the server is its normal end
        pass
    finally:
        server.server_close()
    return 0
