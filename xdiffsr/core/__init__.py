"""Pure-torch diffusion core: networks, preconditioning, schedules, samplers, likelihoods, operators."""
