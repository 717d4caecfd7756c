//! `ShardSet.index` for pyarrow: the index rows the reader validated at open, in its video
//! order, as one Arrow record batch exported through the Arrow PyCapsule stream interface
//! (`__arrow_c_stream__`), which `pyarrow.table()` imports without copying the columns.
//!
//! The rows come from the reader rather than from `index.parquet` so that row `i` is video
//! `i` of the set also for a set joined from parts or opened from several directories.

use arrow::array::{RecordBatch, RecordBatchIterator};
use arrow::ffi_stream::FFI_ArrowArrayStream;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

/// The capsule name the Arrow PyCapsule interface prescribes for a C stream.
const STREAM_CAPSULE: &std::ffi::CStr = c"arrow_array_stream";

/// The index of a set as an Arrow stream of one batch (pass it to `pyarrow.table`).
#[pyclass(frozen, module = "cvrl._cvrl")]
pub struct IndexStream {
    batch: RecordBatch,
}

impl IndexStream {
    pub fn new(batch: RecordBatch) -> Self {
        IndexStream { batch }
    }
}

#[pymethods]
impl IndexStream {
    /// The Arrow PyCapsule stream interface. `requested_schema` is ignored, as the
    /// interface allows: the index has one schema.
    #[pyo3(signature = (requested_schema = None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema;
        let batches = RecordBatchIterator::new([Ok(self.batch.clone())], self.batch.schema());
        let stream = FFI_ArrowArrayStream::new(Box::new(batches));
        // The capsule owns the stream; dropping it releases the stream unless pyarrow took
        // it over (importing sets its release callback to null), as the interface requires.
        PyCapsule::new_with_value(py, stream, STREAM_CAPSULE)
    }

    fn __len__(&self) -> usize {
        self.batch.num_rows()
    }
}
