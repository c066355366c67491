; troubleshooting_out_of_memory.lisp -- the "Out of memory" snippet of docs/guide.md.
; model: tiny
;
; The snippet's lines are kept verbatim. Lines after a "; [added]" comment are not in the snippet.
; Fewer new tokens means a smaller KV cache; the CPU has the most memory. A tiny random transformer
; keeps this fast (its text is noise).

(use 'lispe_torch)

; [added] what the block assumes: a model, a generator and a prompt
(setq model (torch_model_create "transformer" {"vocab_size":49152 "seed":2}))
(tokenizer_load "SmolLM2-135M-Instruct")
(setq generator (torch_generator_create model (torch_get_best_device)))
(setq input_tokens (torch_tensor (tokenizer_encode "Memory is")))

; Reduce sequence length
(torch_set_generation_params generator 25 0.8 40 0.9)

; Use CPU instead of GPU
(setq generator (torch_generator_create model "cpu"))

; [added] the new generator starts from the defaults: set the shorter length on it too
(torch_set_generation_params generator 25 0.8 40 0.9)
(println generator)
(setq out (torch_generate generator input_tokens "greedy"))
(println (- (size out) (size input_tokens)) "new tokens on the CPU:" (tokenizer_decode out))
