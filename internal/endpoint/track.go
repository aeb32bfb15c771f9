package endpoint

// Track keeps per-backend state for a periodic task (probing, scraping)
// in step with the current backend list: it returns backends without nils
// or duplicates, adds state made by init for new ones and drops the state of
// backends no longer listed. The caller holds whatever lock guards state.
func Track[T any](state map[*Backend]T, backends []*Backend, init func(*Backend) T) []*Backend {
	seen := make(map[*Backend]bool, len(backends))
	list := make([]*Backend, 0, len(backends))
	for _, b := range backends {
		if b == nil || seen[b] {
			continue
		}
		seen[b] = true
		list = append(list, b)
		if _, ok := state[b]; !ok {
			state[b] = init(b)
		}
	}
	for b := range state {
		if !seen[b] {
			delete(state, b)
		}
	}
	return list
}
