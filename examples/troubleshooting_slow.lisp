; troubleshooting_slow.lisp -- the "Slow generation" snippet of docs/guide.md.
; model: tiny
;
; The snippet's lines are kept verbatim. Lines after a "; [added]" comment are not in the snippet.
; The check picks the GPU when there is one, else the CPU. A tiny random transformer keeps this fast
; (its text is noise).

(use 'lispe_torch)

; [added] what the block assumes: a model and a prompt
(setq model (torch_model_create "transformer" {"vocab_size":49152 "seed":6}))
(tokenizer_load "SmolLM2-135M-Instruct")
(setq input_tokens (torch_tensor (tokenizer_encode "Faster please")))

; Use GPU if available
(if (torch_cuda_is_available)
    (setq generator (torch_generator_create model "cuda"))
    (setq generator (torch_generator_create model "cpu")))

; Reduce max_length for faster iteration
(torch_set_generation_params generator 30 0.8 40 0.9)

; [added]
(println generator)
(setq out (torch_generate generator input_tokens "top_k"))
(println (- (size out) (size input_tokens)) "new tokens:" (tokenizer_decode out))
