; model_integration.lisp -- the "Loading models" snippet of docs/guide.md.
; model: tiny
;
; The snippet's lines are kept verbatim. Lines after a "; [added]" comment bind what they assume:
; `config` (the new model's shape) and `device`. torch_model_create builds a decoder-only transformer
; with random weights (same seed, same weights): a starting point for training, or a fast stand-in.

(use 'lispe_torch)

; [added] the model's shape; keys: docs/lispe_torch.md
(setq config {"vocab_size":49152 "hidden_size":64 "num_layers":2 "num_heads":4 "num_kv_heads":2
              "max_seq_length":512 "seed":42})
(setq device (torch_get_best_device))

; For PyTorch models that support text generation
; The model should accept token IDs and return logits
(setq model (torch_model_create "transformer" config))
(setq generator (torch_generator_create model device))

; [added] look at the model, check it returns logits for token ids, and generate from it
(println "Model:" model)
(println "Info:" (torch_model_info model))
(tokenizer_load "SmolLM2-135M-Instruct")
(setq ids (tokenizer_encode "Hello world"))
(setq logits (torch_hf_forward model ids))
(println "Logits for" (size ids) "tokens have shape" (tensor_shape logits))
(torch_set_generation_params generator 12 nil nil nil)
(setq out (torch_generate generator ids "greedy"))
(println "Generated (random weights):" (tokenizer_decode out))
