// A small dense matrix, written for modeld's completion benchmark.
#include <stdexcept>
#include <vector>

class Matrix {
public:
    Matrix(std::size_t rows, std::size_t columns) : rows_(rows), columns_(columns), values_(rows * columns, 0.0) {}

    std::size_t rows() const { return rows_; }
    std::size_t columns() const { return columns_; }

    double &at(std::size_t row, std::size_t column) {
        if (row >= rows_ || column >= columns_) {
            throw std::out_of_range("matrix index out of range");
        }
        return values_[row * columns_ + column];
    }

    double at(std::size_t row, std::size_t column) const {
        if (row >= rows_ || column >= columns_) {
            throw std::out_of_range("matrix index out of range");
        }
        return values_[row * columns_ + column];
    }

    Matrix multiply(const Matrix &other) const {
        if (columns_ != other.rows_) {
            throw std::invalid_argument("matrix shapes do not match");
        }
        Matrix result(rows_, other.columns_);
        for (std::size_t row = 0; row < rows_; ++row) {
            for (std::size_t column = 0; column < other.columns_; ++column) {
                double sum = 0.0;
                for (std::size_t k = 0; k < columns_; ++k) {
                    sum += at(row, k) * other.at(k, column);
                }
                result.at(row, column) = sum;
            }
        }
        return result;
    }

    Matrix transpose() const {
        Matrix result(columns_, rows_);
        for (std::size_t row = 0; row < rows_; ++row) {
            for (std::size_t column = 0; column < columns_; ++column) {
                result.at(column, row) = at(row, column);
            }
        }
        return result;
    }

private:
    std::size_t rows_;
    std::size_t columns_;
    std::vector<double> values_;
};
