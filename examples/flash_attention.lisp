; flash_attention.lisp -- the "Memory and speed" snippet of docs/guide.md.
; model: tiny
;
; The snippet's lines are kept verbatim. Lines after a "; [added]" comment bind what they assume:
; `query`, `key_tensor`, `value_tensor` (here the model's own embeddings of a prompt, [1, seq, hidden],
; scaled up so that each position attends mostly to itself) and `generator`. torch_generate takes the
; float result as prompt embeddings, fed to the model in place of token embeddings; as with
; transformers' generate(inputs_embeds=...), the result holds only the new tokens. A tiny random
; transformer keeps this fast (its text is noise).

(use 'lispe_torch)

; [added] a model, its generator, and attention inputs made from a prompt's embeddings
(setq model (torch_model_create "transformer" {"vocab_size":49152 "hidden_size":64 "seed":8}))
(tokenizer_load "SmolLM2-135M-Instruct")
(setq generator (torch_generator_create model "cpu"))
(torch_set_generation_params generator 12 nil nil nil)
(torch_generator_config generator {"seed":0})
(setq ids (tokenizer_encode "Attention is all you need"))
(setq query (* (torch_hf_embeddings model ids) 100.0))
(setq key_tensor query)
(setq value_tensor query)
(println "query/key/value shape:" (tensor_shape query))

; Flash attention for memory efficiency during generation
(setq attention_output (torch_flash_attention query key_tensor value_tensor))
(setq generated_text (torch_generate generator attention_output "top_p"))

; [added]
(println "attention output shape:" (tensor_shape attention_output))
(println "prompt:   " (tokenizer_decode ids))
(println "new tokens:" (tensor_shape generated_text))
(println "generated:" (tokenizer_decode (@ generated_text 0)))
